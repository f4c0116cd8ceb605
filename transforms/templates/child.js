(function(){
var form=document.getElementById("view"),table=document.getElementById("entries");
if(!form||!table)return;
var rows=Array.prototype.slice.call(table.tBodies[0].rows),shown=document.getElementById("shown");
function apply(){
var all=form.elements.scope.value==="all",category=form.elements.category.value,n=0;
rows.forEach(function(row){
var show=(all||row.getAttribute("data-level")!=="context")&&(!category||row.getAttribute("data-category")===category);
row.hidden=!show;if(show)n++;});
shown.textContent="Showing "+n+" of "+rows.length+" entries";
}
function reveal(id){
var target=id&&document.getElementById(id);
if(target&&target.hidden){form.elements.scope.value="all";form.elements.category.value="";apply();}
if(target&&target.parentNode===table.tBodies[0])target.scrollIntoView();
}
form.addEventListener("change",apply);
form.addEventListener("submit",function(event){event.preventDefault();});
window.addEventListener("hashchange",function(){reveal(location.hash.slice(1));});
document.addEventListener("click",function(event){
var link=event.target.closest&&event.target.closest('a[href^="#"]');
if(link)reveal(link.getAttribute("href").slice(1));
});
form.hidden=false;apply();reveal(location.hash.slice(1));
})();
