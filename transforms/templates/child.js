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
form.addEventListener("change",apply);
form.addEventListener("submit",function(event){event.preventDefault();});
window.addEventListener("hashchange",function(){
var target=document.getElementById(location.hash.slice(1));
if(target&&target.hidden){form.elements.scope.value="all";form.elements.category.value="";apply();target.scrollIntoView();}
});
form.hidden=false;apply();
})();
