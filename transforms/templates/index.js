(function(){
var form=document.getElementById("search"),table=document.getElementById("children");
if(!form||!table)return;
var input=form.elements.q,rows=table.tBodies[0].rows,texts=null,shown=document.getElementById("shown"),timer=0;
function apply(){
if(!texts){texts=[];for(var i=0;i<rows.length;i++)texts.push(rows[i].textContent.toLowerCase());}
var terms=input.value.toLowerCase().split(/\s+/).filter(Boolean),n=0;
for(var j=0;j<rows.length;j++){
var text=texts[j],match=terms.every(function(term){return text.indexOf(term)>=0;});
if(rows[j].hidden===match)rows[j].hidden=!match;if(match)n++;}
shown.textContent=terms.length?n+" of "+rows.length+" children match":rows.length+" children";
}
input.addEventListener("input",function(){clearTimeout(timer);timer=setTimeout(apply,rows.length>5000?150:0);});
form.addEventListener("submit",function(event){event.preventDefault();apply();});
form.hidden=false;
})();
